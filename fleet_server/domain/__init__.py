"""Rules and use cases: validation, time rules, pricing arithmetic, budgets; SQL is the store's job."""
