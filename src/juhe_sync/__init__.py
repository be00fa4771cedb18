"""juhe-sync: the customer's own durable copy of every juhebot device's contacts, rooms and messages."""

__version__ = "0.1.0"
