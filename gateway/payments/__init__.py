"""The payments wing: money in through Stripe, CryptoCloud and Robokassa, credited exactly once."""
