from c1222.cli.main import main

main()
