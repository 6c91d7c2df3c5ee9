from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('core', '0003_data_rights')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Notification',
            index=Index(fields=['user_id', 'created_at']),
        ),
        ops.AddIndex(
            model_name='Notification',
            index=Index(fields=['user_id', 'read_at']),
        ),
    ]
