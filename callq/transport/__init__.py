"""What travels through the broker: queue and task names, and place_call messages framed as
kombu's Redis transport stores them. Importing it starts no Celery app.

May import: callq.dialing (a permit's slot), and below.
"""
