from juhe_sync.cli import main

if __name__ == "__main__":  # not when a child process (the callback writer) starts from here
    main()
