"""The human side of the appliance: server-rendered pages over the same services as
the JSON API."""
