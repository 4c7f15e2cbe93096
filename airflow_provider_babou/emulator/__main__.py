"""``python -m airflow_provider_babou.emulator`` = ``babou-emulator``."""

from airflow_provider_babou.emulator.cli import main

if __name__ == "__main__":
    main()
