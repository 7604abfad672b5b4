"""Local stand-ins for the AWS services defender-hub talks to, served on 127.0.0.1 for tests and demos."""
