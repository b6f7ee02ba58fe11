from sleepd.cli import main

main()
