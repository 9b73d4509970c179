from mempipe.cli import main

main()
