"""Offline demo data in the raw Kaggle schema, so the app and tests run without the real file.

`make_synthetic` returns a frame with exactly the columns, spelling and formats that
`pandas.read_csv` gives for `KaggleV2-May-2016.csv` (PatientId as float, ISO timestamps as
strings, "No-show" as "Yes"/"No"), so it goes through the same cleaning as the real file.
Anything shown from it must be labelled synthetic (`LoadedData.is_synthetic`).

    from noshow.data.synthetic import make_synthetic
    raw = make_synthetic(n_rows=6000, seed=0)   # deterministic for a seed

What it imitates (so models and the tabular baseline have something real-looking to learn):
- appointment days on weekdays 2016-04-29 .. 2016-06-08, so the time split works;
- about 20% no-shows, more for longer lead times, young adults (18-34), scholarship holders
  and patients who tend to miss (a per-patient propensity, so history features carry
  signal); fewer for same-day bookings and people aged 65+;
- patients with several appointments (some on the same day);
- like the real file, one row with Age -1 and one booked after its appointment day (for
  n_rows >= 50), so the cleaning report has something to show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FIRST_DAY = "2016-04-29"
LAST_DAY = "2016-06-08"

# Real neighbourhood names of Vitória with rough relative frequencies and a small effect on
# the no-show log-odds.
_NEIGHBOURHOODS = (
    ("JARDIM CAMBURI", 7.0, -0.10),
    ("MARIA ORTIZ", 5.2, 0.00),
    ("RESISTÊNCIA", 4.0, 0.05),
    ("JARDIM DA PENHA", 3.5, -0.15),
    ("ITARARÉ", 3.2, 0.25),
    ("CENTRO", 3.0, 0.10),
    ("TABUAZEIRO", 2.8, 0.00),
    ("SANTA MARTHA", 2.8, -0.10),
    ("JESUS DE NAZARETH", 2.6, 0.15),
    ("BONFIM", 2.5, 0.05),
    ("SANTO ANTÔNIO", 2.5, 0.00),
    ("SÃO PEDRO", 2.2, 0.00),
    ("CARATOÍRA", 2.2, 0.10),
    ("JABOUR", 2.3, -0.05),
    ("ANDORINHAS", 2.1, 0.05),
    ("ILHA DO PRÍNCIPE", 2.0, 0.15),
    ("SÃO JOSÉ", 1.8, 0.00),
    ("REDENÇÃO", 1.6, 0.00),
    ("JOANA D´ARC", 1.2, 0.00),
    ("PRAIA DO SUÁ", 1.1, 0.10),
    ("MATA DA PRAIA", 0.6, -0.20),
    ("GOIABEIRAS", 0.6, -0.05),
)
_TARGET_RATE = 0.20


def _age_weights() -> np.ndarray:
    ages = np.arange(101)
    w = np.where(ages <= 60, 1.0, np.clip(1.0 - (ages - 60) / 42, 0.03, None))
    w[0] = 2.5  # babies are frequent patients in the real file (about 3.5%)
    return w / w.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate_intercept(logit: np.ndarray, target: float) -> float:
    """Intercept that makes the mean predicted rate equal `target` (bisection)."""
    lo, hi = -10.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(logit + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def make_synthetic(n_rows: int = 6000, seed: int = 0) -> pd.DataFrame:
    """`n_rows` synthetic appointments in the raw Kaggle schema, deterministic for `seed`."""
    if not isinstance(n_rows, int) or n_rows < 1:
        raise ValueError(f"n_rows must be a positive whole number, got {n_rows!r}.")
    rng = np.random.default_rng(seed)

    # Patients: fixed attributes plus a propensity to miss that their history reveals.
    # Appointments per patient: geometric, like the real file (61% of patients book once,
    # 22% twice, a few dozens of times). One slot per row is enough patients.
    n_patients = n_rows
    visits = rng.geometric(0.58, size=n_patients)
    p_gender = np.where(rng.random(n_patients) < 0.65, "F", "M")
    p_age = rng.choice(101, size=n_patients, p=_age_weights())
    p_scholarship = (rng.random(n_patients) < np.where(p_age < 18, 0.14, 0.09)).astype(int)
    p_hypertension = (rng.random(n_patients) < np.clip((p_age - 25) / 90, 0, 0.6)).astype(int)
    p_diabetes = (rng.random(n_patients) < np.clip((p_age - 35) / 250, 0, 0.2)).astype(int)
    p_alcoholism = (rng.random(n_patients) < np.where(p_age >= 18, 0.035, 0.0)).astype(int)
    p_handicap = rng.choice(5, size=n_patients, p=[0.979, 0.0185, 0.0018, 0.0005, 0.0002])
    weights = np.array([w for _, w, _ in _NEIGHBOURHOODS])
    p_place = rng.choice(len(_NEIGHBOURHOODS), size=n_patients, p=weights / weights.sum())
    p_propensity = rng.normal(0.0, 0.8, n_patients)
    patient_ids = (rng.integers(1, 10**9, size=n_patients).cumsum() + 10**10)[
        rng.permutation(n_patients)
    ]

    # Appointments.
    who = rng.permutation(np.repeat(np.arange(n_patients), visits)[:n_rows])
    days = pd.bdate_range(FIRST_DAY, LAST_DAY)
    day = days[rng.integers(0, len(days), size=n_rows)]
    same_day = rng.random(n_rows) < 0.35
    lead = np.where(same_day, 0, np.minimum(rng.geometric(1 / 14, size=n_rows), 150))
    hour_weights = np.array([2, 19, 15, 13, 11, 8, 5, 9, 9, 8, 5, 3, 1.3, 0.5, 0.2])
    hour = rng.choice(np.arange(6, 21), size=n_rows, p=hour_weights / hour_weights.sum())
    seconds = rng.integers(0, 3600, size=n_rows)
    scheduled = (
        day
        - pd.to_timedelta(lead, unit="D")
        + pd.to_timedelta(hour, unit="h")
        + pd.to_timedelta(seconds, unit="s")
    )
    sms = ((lead >= 3) & (rng.random(n_rows) < 0.55)).astype(int)

    age = p_age[who]
    logit = (
        1.0 * (lead > 0)
        + 0.35 * np.log1p(lead)
        + 0.45 * ((age >= 18) & (age <= 34))
        - 0.45 * (age >= 65)
        + 0.30 * p_scholarship[who]
        + 0.25 * p_alcoholism[who]
        - 0.15 * sms
        + np.array([e for _, _, e in _NEIGHBOURHOODS])[p_place[who]]
        + p_propensity[who]
    )
    p = _sigmoid(logit + _calibrate_intercept(logit, _TARGET_RATE))
    no_show = rng.random(n_rows) < p

    age_out = age.astype(np.int64)
    scheduled_out = pd.Series(scheduled)
    if n_rows >= 50:
        bad_age, bad_lead = rng.choice(n_rows, size=2, replace=False)
        age_out[bad_age] = -1
        scheduled_out.iloc[bad_lead] = day[bad_lead] + pd.Timedelta(hours=30)

    # AppointmentIDs grow with booking time, as in the real file.
    order = np.argsort(scheduled_out.to_numpy(), kind="stable")
    appointment_id = np.empty(n_rows, dtype=np.int64)
    appointment_id[order] = 5_500_000 + rng.integers(1, 4, size=n_rows).cumsum()

    frame = pd.DataFrame(
        {
            "PatientId": patient_ids[who].astype(np.float64),
            "AppointmentID": appointment_id,
            "Gender": p_gender[who],
            "ScheduledDay": scheduled_out.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
            "AppointmentDay": pd.Series(day).dt.strftime("%Y-%m-%dT00:00:00Z").to_numpy(),
            "Age": age_out,
            "Neighbourhood": np.array([n for n, _, _ in _NEIGHBOURHOODS])[p_place[who]],
            "Scholarship": p_scholarship[who].astype(np.int64),
            "Hipertension": p_hypertension[who].astype(np.int64),
            "Diabetes": p_diabetes[who].astype(np.int64),
            "Alcoholism": p_alcoholism[who].astype(np.int64),
            "Handcap": p_handicap[who].astype(np.int64),
            "SMS_received": sms.astype(np.int64),
            "No-show": np.where(no_show, "Yes", "No"),
        }
    )
    # Real file order: grouped by appointment day.
    return frame.sort_values(["AppointmentDay", "AppointmentID"], kind="stable").reset_index(
        drop=True
    )
