"""nostr-swarm relay_mock."""
