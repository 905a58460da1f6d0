"""Who is calling and what they may do: users, tokens, sessions, pairing, credentials and the
policy."""
