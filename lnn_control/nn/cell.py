"""The one-step interface shared by the liquid cells."""

from __future__ import annotations

from torch import Tensor, nn

from .inputs import check_dt_values


class LiquidCell(nn.Module):
    """A cell steps one time step: ``cell(x (B, in), h (B, H), dt) -> (y (B, out), h' (B, H))``.

    Subclasses implement ``forward_sequence(x (B, T, in), h (B, H), dt (B, T), keep (B, T) | None)``, the
    fused time loop that the sequence modules call; one step is a sequence of length one.
    """

    def forward(self, x: Tensor, h: Tensor, dt: Tensor | float = 1.0) -> tuple[Tensor, Tensor]:
        """x (B, in), h (B, H), dt (B, 1) or (B,) or a number (seconds) -> (y (B, out), h' (B, H))."""
        if not isinstance(dt, Tensor):
            dt = x.new_full((x.shape[0], 1), float(dt))
        dt = dt.reshape(x.shape[0], 1)
        check_dt_values(dt)
        y, h_last = self.forward_sequence(x.unsqueeze(1), h, dt, None)
        return y[:, 0], h_last

    def forward_sequence(
        self, x: Tensor, h: Tensor, dt: Tensor, keep: Tensor | None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
