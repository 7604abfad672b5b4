"""The KCL record processor, its run loop and the daemon launcher (the consumer's issue builds it)."""
