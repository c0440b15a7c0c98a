"""The checks a spec needs its tokenizer for: the tokenizer builds, and the stages fit it.

`tokenmill validate` runs them, and `run` runs the same on the driver before any work, so
what validate accepts, run accepts; an error here is one SpecError line, never an actor's.
The one check a run's driver leaves out is a neural encoder's model (Tokenizer.check: load it, run it
once): each worker loads and checks it, and the run waits for the first worker's verdict before it
writes anything (pipeline.job), so the driver never loads a model it does not run.
"""
from __future__ import annotations

from pipeline.errors import SpecError
from pipeline.spec import JobSpec, check_stages
from pipeline.tokenizer_spec import BaseTokenizerSpec, TokenizerTraits
from pipeline.tokenizers import Tokenizer, build_tokenizer

# what a tokenizer file that is missing, corrupt or of the wrong type raises while it loads
_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, EOFError)


def check_job(spec: JobSpec, check_model: bool = True) -> Tokenizer:
    """Build the spec's tokenizer once and check the stages against what it really gives; `check_model`:
    also load and check a neural encoder's model (Tokenizer.check)."""
    tokenizer = load_tokenizer(spec.tokenizer, check=check_model)
    traits = TokenizerTraits(has_codebook=tokenizer.codebook() is not None,
                             has_token_bytes=tokenizer.token_bytes() is not None,
                             vocab_size=tokenizer.vocab_size)
    check_stages(spec.stages, spec.source.modality, traits)
    return tokenizer


def load_tokenizer(spec: BaseTokenizerSpec, engine: str | None = None, check: bool = True) -> Tokenizer:
    """build_tokenizer, with every reason it fails said as a SpecError that names the field."""
    try:
        return build_tokenizer(spec, engine, check)
    except SpecError:
        raise
    except ImportError as exc:
        raise SpecError(f"tokenizer.kind: {spec.kind!r} needs the package {exc.name or exc}, which is not "
                        "installed (media kinds: pip install 'tokenmill[media]', and torch)") from None
    except _LOAD_ERRORS as exc:
        where = getattr(spec, "path", None) or spec.kind
        raise SpecError(f"tokenizer.path: cannot load {where} as a {spec.kind!r} tokenizer: "
                        f"{type(exc).__name__}: {exc}") from None
