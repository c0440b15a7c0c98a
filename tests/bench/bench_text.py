"""`python tests/bench/bench_text.py [options]`: the same as `tokenmill bench text [options]`."""
import argparse
import logging
import sys

from pipeline.bench import cli_bench, configure_bench_parser

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_text", description="engines and the text pipeline, side by side")
    configure_bench_parser(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(cli_bench(parser.parse_args(["text", *sys.argv[1:]])))
