"""Notifications: one email per order event, sent once even if the job runs twice."""
