"""What tests share: the stack, scenarios, the independent recount, builders, run readers,
invariants and direct ledger row counts. Test modules import from here, never from each other."""
