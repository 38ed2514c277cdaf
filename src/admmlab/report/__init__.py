"""Study reports drawn from MLflow; small plotting helpers shared with runs."""
