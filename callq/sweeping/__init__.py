"""The worker's threads besides its tasks: the feed (judging campaigns, handing parked calls
to the queue with their permits) and the lease sweeper.

May import: callq.transport, callq.dialing, and below.
"""
