"""nostr-swarm router."""
