from juhe_sync.cli import main

main()
