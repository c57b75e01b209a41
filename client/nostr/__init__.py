"""The Nostr protocol core: keys, events, filters, relay wire messages, NIP-19, NIP-04, NIP-44 and
the typed errors. Pure: values in, values out; no sockets, no files, no clock of its own."""
