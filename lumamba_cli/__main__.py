from lumamba_cli.cli import main

main()
