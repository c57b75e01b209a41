"""nostr-swarm provider."""
