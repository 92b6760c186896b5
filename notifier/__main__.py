from notifier.cli import main

# Guarded: worker processes (``runtime.compose_processes``) import the main module as they start.
if __name__ == "__main__":
    main()
