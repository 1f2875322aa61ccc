"""Payments: provider intents, signed webhooks, late payments, refunds, the watchdog."""
