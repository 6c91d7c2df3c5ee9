from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('core', '0001_initial'), ('core', '0002_course_public_moderator_names'), ('core', '0003_data_rights'), ('core', '0004_notification_indexes'), ('moderation', '0001_initial')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='LogEntry',
            index=Index(fields=['course_id', 'seq']),
        ),
        ops.AddIndex(
            model_name='Sanction',
            index=Index(fields=['course_id', 'user_id']),
        ),
    ]
