"""The backfill orchestrator: snapshot -> plan -> artifacts -> lane dispatch -> outcome."""
