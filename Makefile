.PHONY: install test test-slow quality style demo

install:
	pip install torch==2.13.0
	pip install -e ".[test,quality,demo]"

test:
	python -m pytest

test-slow:
	python -m pytest -m slow

quality:
	ruff check bertdistill glue_tasks scripts tests
	ruff format --check bertdistill glue_tasks scripts tests

style:
	ruff check --fix bertdistill glue_tasks scripts tests
	ruff format bertdistill glue_tasks scripts tests

demo:
	bash scripts/demo.sh
