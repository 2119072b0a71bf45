"""What providers charge, for the usage ledger's cost estimates (`AIBOT_PRICE_*`
overrides them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable"]


@dataclass(frozen=True, slots=True)
class Price:
    """What one provider charges, in US dollars: an estimate for the usage ledger."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    per_image: float = 0.0
    per_video_second: float = 0.0

    def cost(self, tokens_in: int, tokens_out: int, images: int, video_seconds: float) -> float:
        return (
            tokens_in / 1000 * self.input_per_1k
            + tokens_out / 1000 * self.output_per_1k
            + images * self.per_image
            + video_seconds * self.per_video_second
        )


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices per provider. Defaults: OpenAI gpt-5-mini text and gpt-image-1-mini
    (medium, 1024x1024); MiniMax M2-series text, image-01, Hailuo 768p video
    (about $0.28 per 6 s); Stability stable-image core (3 credits)."""

    openai: Price = Price(0.00025, 0.002, 0.011, 0.0)
    minimax: Price = Price(0.0003, 0.0012, 0.0035, 0.047)
    stability: Price = Price(0.0, 0.0, 0.03, 0.0)

    def of(self, provider: str) -> Price:
        """The provider's prices; an unknown provider costs nothing."""
        price = getattr(self, provider, None)
        return price if isinstance(price, Price) else Price()


DEFAULT_PRICES = PriceTable()
