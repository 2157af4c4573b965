"""sealpost conformance suite, Python runner: the server cases through Debian's grpcio."""
