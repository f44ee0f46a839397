"""Open-loop evaluation: replay recorded episodes through a policy, report MSE/MAE, plot."""
