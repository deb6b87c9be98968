import unittest

from ramrod_kit import FULL, INCREMENTAL, ConfigError
from ramrod_kit.entries import Entries
from ramrod_kit.facts import Follower, leader


class EntriesTest(unittest.TestCase):
    def setUp(self) -> None:
        self.p = Entries('snapshot_every = 1_000\nkeep_entries = 100\nkind = "incremental"\ncheck_ms = 250')

    def test_short_of_the_threshold(self) -> None:
        d = self.p.decide(*leader(5000, 999))
        self.assertIsNone(d.snapshot)
        self.assertEqual(d.purge_up_to, 4900)
        self.assertEqual(d.next_check_ms, 250)
        self.assertEqual(d.reason, "999 of 1000 entries")

    def test_at_the_threshold(self) -> None:
        d = self.p.decide(*leader(5000, 1000))
        self.assertEqual(d.snapshot, INCREMENTAL)
        self.assertEqual(d.reason, "1000 entries since the last snapshot >= 1000")

    def test_the_first_snapshot_is_full(self) -> None:
        d = self.p.decide(*leader(None, 5000))
        self.assertEqual(d.snapshot, FULL)
        self.assertIsNone(d.purge_up_to)

    def test_no_second_build(self) -> None:
        log, snap = leader(5000, 2000)
        snap.in_progress = True
        self.assertIsNone(self.p.decide(log, snap).snapshot)

    def test_a_snapshot_in_flight_holds_the_purge(self) -> None:
        log, snap = leader(5000, 10)
        log.followers = [Follower(id=2, snapshot_in_flight=3000)]
        self.assertEqual(self.p.decide(log, snap).purge_up_to, 3000)

    def test_config_errors_name_the_key(self) -> None:
        for text, key in [
            ("snapshot_evry = 3", "snapshot_evry"),
            ("snapshot_every = 0", "snapshot_every"),
            ('kind = "huge"', "kind"),
            ("check_ms = 99999999999", "check_ms"),
            ('keep_entries = "many"', "keep_entries"),
            ("keep_entries = true", "keep_entries"),
        ]:
            with self.subTest(text=text):
                with self.assertRaises(ConfigError) as e:
                    Entries(text)
                self.assertIn(key, str(e.exception))


if __name__ == "__main__":
    unittest.main()
