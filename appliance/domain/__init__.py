"""The appliance's rules and records that every layer shares: states and their moves,
who acted, domain events. Pure Python: no I/O, no SQL, no web."""
