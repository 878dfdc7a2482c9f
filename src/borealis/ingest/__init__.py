"""Taking notifications in: the webhook, its wire delivery to the writer process, the group-commit
writer, and the intake flow that turns a notification into a problem record and a recorded follow-up.
"""
