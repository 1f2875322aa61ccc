from bookbazar.cli import main

main()
