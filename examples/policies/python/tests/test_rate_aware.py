import unittest

from ramrod_kit import FULL, INCREMENTAL, ConfigError
from ramrod_kit.facts import leader
from ramrod_kit.rate_aware import RateAware

MIB = 1 << 20


class RateAwareTest(unittest.TestCase):
    def policy(self) -> RateAware:
        return RateAware("log_budget_bytes = 104857600\nhorizon_s = 10\nmin_interval_s = 5\n"
                         "keep_s = 2\nmin_keep = 10")

    def test_looks_ahead_at_the_byte_rate(self) -> None:
        p = self.policy()
        log, snap = leader(10_000, 500)
        snap.age_ms, snap.bytes_since, snap.state_keys, snap.dirty_keys = 60_000, 60 * MIB, 1000, 100
        log.byte_rate = 1 * MIB
        self.assertIsNone(p.decide(log, snap).snapshot)  # 60 + 10 < 100 MiB
        log.byte_rate = 5 * MIB
        d = p.decide(log, snap)  # 60 + 50 >= 100 MiB; 10% of keys changed
        self.assertEqual(d.snapshot, INCREMENTAL)
        self.assertIn("10% of keys changed", d.reason)
        snap.dirty_keys = 900
        self.assertEqual(p.decide(log, snap).snapshot, FULL)

    def test_not_more_often_than_the_interval(self) -> None:
        p = self.policy()
        log, snap = leader(10_000, 500)
        snap.age_ms, snap.bytes_since = 1_000, 200 * MIB
        self.assertIsNone(p.decide(log, snap).snapshot)

    def test_the_tail_follows_the_median_rate(self) -> None:
        p = self.policy()
        log, snap = leader(100_000, 10)
        for rate in [1000, 1000, 1000, 50_000]:  # one burst
            log.append_rate = rate
            d = p.decide(log, snap)
        self.assertEqual(d.purge_up_to, 100_000 - 2 * 1000)

    def test_config_errors_name_the_key(self) -> None:
        for text, key in [("horizon = 3", "horizon"), ("full_when_dirty = 2", "full_when_dirty"),
                          ("log_budget_bytes = 0", "log_budget_bytes"), ('keep_s = "x"', "keep_s")]:
            with self.subTest(text=text):
                with self.assertRaises(ConfigError) as e:
                    RateAware(text)
                self.assertIn(key, str(e.exception))


if __name__ == "__main__":
    unittest.main()
