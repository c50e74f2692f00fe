"""Activity statistics of a guild, and the HTML report made from them."""
