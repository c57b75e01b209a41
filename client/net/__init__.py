"""Relay connections and the relay pool: the only users of websockets in ``client``."""
