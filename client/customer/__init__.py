"""The customer: the quorum engine and its comparators, the job collector, ``SwarmClient``,
provider discovery, selection and the reputation ledger."""
