"""The `finetune` command line: the parser and one module per subcommand; what a person sees on
the terminal."""
