"""What the agent and the appliance share: the wire format between them, sanitising
of text from outside, JSON logs and time. Neither side imports the other; both import
this. It runs wherever the agent runs, so it needs nothing but the standard library
and PyNaCl."""
