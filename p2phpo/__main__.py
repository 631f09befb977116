"""``python -m p2phpo`` and the ``p2phpo`` command."""


def main() -> None:
    """Start a node's worker first (``p2phpo node``: it imports JAX while the command line
    imports the node, ``p2phpo.train.early``), then run the command line."""
    from p2phpo.train import early

    early.spawn()
    from p2phpo.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
