"""The replica's amplitude law as the ML stage measures it (no noise, no station scatter).

The generator scales each pair so that its Wood–Anderson peak obeys Hutton & Boore; the ML
stage adds the instrument response and a cosine pre-filter. Small events have corner
frequencies far above the Wood–Anderson corner and lose energy to kappa and Q, so this checks
that the stage still reads their magnitude: the replica deliberately does not model the ML
breakdown of real small events (it defines its true magnitude as ML). Measured: |ML - M| <=
0.037, the largest at M 1.0 and 8 km, where the 30–40 Hz pre-filter taper removes a little.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from obspy import Stream, Trace, UTCDateTime
from obspy.core.inventory import Channel, Inventory, Network, Station

from pipeline.magnitude import AmplitudeMeter, MagnitudeConfig, hutton_boore_ml
from pipeline.synthetic.params import ScenarioConfig
from pipeline.synthetic.stations import channel_response
from pipeline.synthetic.waveforms import LEAD_S, synthesize_pairs

START = UTCDateTime("2000-10-08T05:00:00")
PAD_S = 30.0  # zeros around each segment, so that tapers and windows stay clear of its ends


def _inventory(cfg: ScenarioConfig) -> Inventory:
    channels = [
        Channel(
            f"HH{comp}",
            "",
            35.3,
            133.3,
            0.0,
            0.0,
            azimuth=azimuth,
            dip=0.0,
            sample_rate=cfg.sampling_rate,
            response=channel_response(cfg.sensitivity),
        )
        for comp, azimuth in (("E", 90.0), ("N", 0.0))
    ]
    return Inventory(
        networks=[Network("XX", stations=[Station("ST", 35.3, 133.3, 0.0, channels=channels)])]
    )


def test_noise_free_replica_amplitudes_give_the_true_ml_down_to_small_magnitudes():
    cfg = ScenarioConfig(magnitude_scatter=0.0)
    fs = cfg.sampling_rate
    pairs = pd.DataFrame(
        [
            {"magnitude": m, "hypo_km": r, "azimuth_deg": 30.0, "t_p": r / 6.0, "t_s": r / 3.5}
            for m in (0.5, 1.0, 1.5, 2.0, 3.0)
            for r in (8.0, 20.0, 40.0, 60.0)
        ]
    )
    velocity, _, _ = synthesize_pairs(np.random.default_rng(1), pairs, 4096, cfg)
    meter = AmplitudeMeter(_inventory(cfg), MagnitudeConfig())
    pad = np.zeros(int(PAD_S * fs))
    errors = []
    for i, pair in enumerate(pairs.itertuples()):
        stream = Stream(
            [
                Trace(
                    np.concatenate([pad, velocity[i, k] * cfg.sensitivity, pad]),
                    header={
                        "network": "XX",
                        "station": "ST",
                        "channel": f"HH{comp}",
                        "sampling_rate": fs,
                        "starttime": START,
                    },
                )
                for k, comp in enumerate("EN")
            ]
        )
        t_s = START + PAD_S + LEAD_S + pair.t_s - pair.t_p
        amplitude, _, n = meter.station_amplitude(stream, (t_s - 1, t_s + 10))
        assert n == 2
        errors.append(float(hutton_boore_ml(amplitude, pair.hypo_km)) - pair.magnitude)
    table = pairs.assign(error=errors)[["magnitude", "hypo_km", "error"]].round(3)
    assert np.abs(errors).max() < 0.05, table.to_dict("records")  # measured: 0.037
