DROP TABLE otp_challenges;
DROP TABLE refresh_tokens;
DROP TABLE memberships;
DROP TABLE signing_keys;
