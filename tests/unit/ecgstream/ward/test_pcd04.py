import hl7

from ecgstream.ward.pcd04 import AlertReport, Sender, ack_code, report_alert

NOW = 1_790_000_000.0


def report(**changes: object) -> AlertReport:
    fields: dict = dict(
        alarm_id="bed-7:boot-1:vtach:16746",
        device_id="bed-7",
        patient_ref="pt-0123456789ab",
        kind="vtach",
        category="clinical",
        priority="high",
        fault=None,
        phase="start",
        event_time=NOW - 2,
        heart_rate=142.0,
    )
    fields.update(changes)
    return AlertReport(**fields)


def test_a_raised_alarm_is_an_oru_r40_of_the_acm_profile_with_its_facets() -> None:
    message = hl7.parse(report_alert(report(), Sender(point_of_care="CCU"), NOW))
    msh = message.segment("MSH")
    assert str(msh[9]) == "ORU^R40^ORU_R40" and str(msh[12]) == "2.6"
    assert str(msh[15]) == "AL" and str(msh[16]) == "NE"
    assert str(msh[21]).startswith("IHE_PCD_ACM_001^IHE PCD^")
    assert [str(s[0]) for s in message] == ["MSH", "PID", "PV1", "OBR"] + ["OBX"] * 5
    assert str(message.segment("PID")[3]) == "pt-0123456789ab^^^ECGSTREAM^PI"  # a pseudonym
    assert str(message.segment("PV1")[3]) == "CCU^^bed-7"  # the bed is the location
    obr = message.segment("OBR")
    assert str(obr[3]).startswith("bed-7:boot-1:vtach:16746") and str(obr[4]).startswith("196616")
    identity, rate, phase, state, inactivation = message.segments("OBX")
    assert str(identity[5]) == "Ventricular tachycardia"
    assert [str(r) for r in identity[8]] == ["A", "PH", "SP"]  # priority high, physiological
    assert str(rate[3]).startswith("147842") and str(rate[5]) == "142"
    assert [str(s[4]) for s in message.segments("OBX")] == [f"1.0.0.0.{i}" for i in range(1, 6)]
    assert (str(phase[5]), str(state[5]), str(inactivation[5])) == ("start", "active", "enabled")


def test_an_episode_end_and_a_technical_alarm_say_so() -> None:
    ended = hl7.parse(
        report_alert(report(kind="afib", priority="medium", phase="end"), Sender(), NOW)
    )
    obx = ended.segments("OBX")
    assert str(obx[0][3]).startswith("199736^MDC_EVT_ECG_ATR_FIB")
    assert (str(obx[2][5]), str(obx[3][5])) == ("end", "inactive")
    lead_off = hl7.parse(
        report_alert(
            report(
                kind="technical",
                category="technical",
                priority="medium",
                fault="lead_off",
                heart_rate=None,
            ),
            Sender(),
            NOW,
        )
    )
    first = lead_off.segments("OBX")[0]
    assert str(first[3]).startswith("196876^MDC_EVT_LEAD_DISCONN")
    assert [str(r) for r in first[8]] == ["A", "PM", "ST"]  # technical source


def test_the_control_id_is_stable_per_alarm_event_and_differs_between_events() -> None:
    a = report_alert(report(), Sender(), NOW)
    again = report_alert(report(), Sender(), NOW + 60)  # resent a minute later
    end = report(phase="end")
    control = lambda text: str(hl7.parse(text).segment("MSH")[10])  # noqa: E731
    assert control(a) == control(again) == report().control_id
    assert end.control_id != report().control_id and len(end.control_id) <= 20


def test_no_patient_name_travels() -> None:
    text = report_alert(report(), Sender(), NOW)
    assert str(hl7.parse(text).segment("PID")[5]) == "^^^^^^U"  # name type "unspecified"


def test_the_ack_code_and_control_id_are_read_off_an_ack() -> None:
    message = hl7.parse(report_alert(report(), Sender(), NOW))
    assert ack_code(str(message.create_ack("CA"))) == ("CA", report().control_id)
    assert ack_code("MSH|^~\\&|X\rMSA|AR|ID1") == ("AR", "ID1")
    assert ack_code("garbage") == ("", "")
