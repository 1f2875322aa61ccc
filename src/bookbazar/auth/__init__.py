"""Users, passwords, tokens and the CurrentUser/AdminUser dependencies."""
