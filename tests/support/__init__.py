"""What tests share: the stack, scenarios, the independent recount, builders, run readers and
invariants. Test modules import from here, never from each other."""
