from aezoo.cli import main

main()
