"""The fast engine: composer's static decoding loop (:mod:`composer.engine.fastloop`), batched.

Every model window of a batch runs as one decoder batch; window *n* of a segment samples from a
generator seeded from (segment seed, n), so a segment's tokens do not depend on its batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

from composer.engine.base import EngineBase, Planned, derive_window_seed
from composer.engine.types import ProgressFn
from composer.errors import EngineError
from composer.settings import STEP_MODES

if TYPE_CHECKING:
    from composer.engine.fastloop import FastDecoder, StepMode
    from composer.engine.models import LoadedModel


class FastEngine(EngineBase):
    """composer's decoding loop behind the engine contract."""

    name = "fast"

    def __init__(self, lm: LoadedModel, step_mode: str = "auto"):
        super().__init__(lm)
        if step_mode not in STEP_MODES:
            raise EngineError(f"unknown decode step {step_mode!r}; use {', '.join(STEP_MODES)}")
        self.mode: StepMode = "graph" if lm.device.type == "cuda" else "eager"
        if step_mode != "auto":
            self.mode = cast("StepMode", step_mode)
        self._decoder: FastDecoder | None = None

    @property
    def decoder(self) -> FastDecoder:
        """The loop over this model's weights, built once (it re-points the weights to shared tensors)."""
        from composer.engine.fastloop import FastDecoder

        if self._decoder is None:
            self._decoder = FastDecoder(self.lm)
        return self._decoder

    def _tokens(self, plans: list[Planned], progress: ProgressFn) -> None:
        from composer.engine.fastloop import Row

        done = [0] * len(plans)
        for w in range(max(len(p.windows) for p in plans)):
            active = [i for i, p in enumerate(plans) if w < len(p.windows)]
            rows = []
            for i in active:
                plan, win = plans[i], plans[i].windows[w]
                context = plan.tokens[:, plan.tokens.shape[1] - win.context_frames :]
                chroma = plan.window_chroma(win, self.spec.frame_rate, self.spec.chroma_length)
                rows.append(Row(plan.request.text, context, win.new_frames, derive_window_seed(plan.request.seed, w),
                                plan.request.sampling, chroma))  # fmt: skip

            def on_row(r: int, frames: int, _wanted: int, active: list[int] = active) -> None:
                progress(active[r], done[active[r]] + frames, plans[active[r]].frames)

            new = self.decoder.generate(rows, on_row, mode=self.mode)
            for i, frames in zip(active, new, strict=True):
                plans[i].tokens = np.concatenate([plans[i].tokens, frames], axis=1)
                done[i] += frames.shape[1]

    def unload(self) -> None:
        if self._decoder is not None:
            self._decoder.release()
        self._decoder = None
        super().unload()
