"""PBX simulators: real AMI and ESL servers on 127.0.0.1 replaying captured traffic (tests, demo, bench)."""
