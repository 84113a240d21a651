from corrkit.cli.main import run

run()
