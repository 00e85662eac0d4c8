"""What the appliance hands out to hosts: the agent's one-line installer and the agent
builds (wheelhouses) it installs from."""
