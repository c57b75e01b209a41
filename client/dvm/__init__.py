"""NIP-90 (jobs, results, feedback, cancellations), NIP-89 (handler announcements), sealed results
and commit-reveal: the single owner of every DVM event the customer and the provider send or
read. Pure."""
